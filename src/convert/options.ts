/** Options shared by the family converters (`padserve convert`). */
export interface ConvertOptions {
  /** Model name written into the card (default: basename of the output folder). */
  name?: string;
  /** Labels file, one label per line. */
  labelsFile?: string;
  /** Image preprocessing JSON (ResNet). */
  preprocessFile?: string;
  /** Router temperature override, as given on the command line. */
  temperature?: string;
}

/** A user-facing conversion error: printed as one line naming the tensor and what was expected. */
export class ConvertError extends Error {
  override name = 'ConvertError';
  readonly userFacing = true;
}
