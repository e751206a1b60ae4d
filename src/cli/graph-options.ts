/**
 * The graph options `padserve convert` and `padserve synth resnet50` share: weight form, weights budget, buckets,
 * layout and forms (docs/resnet-graph.md explains each with its measurements).
 */
import { CliError, floatOption } from './args.js';
import type { GraphChoice } from '../convert/options.js';
import type { DynamicForm } from '../convert/resnet/padconv.js';

export const GRAPH_OPTIONS = {
  'weight-form': { type: 'string' },
  'weights-budget-mb': { type: 'string' },
  buckets: { type: 'string' },
  layout: { type: 'string' },
  forms: { type: 'string' },
} as const;

export const GRAPH_USAGE = `  --weight-form F        per-sample weight form of PAD conv layers: auto (default: per layer the smaller of
                         dense and unpool) | dense (fastest, stores K kernels) | unpool | unpool64 | scatter
                         (scatter: per-sample graphs only, --buckets 1)
  --weights-budget-mb N  per layer the fastest form that keeps the stored weights within N MB (overrides
                         --weight-form; fails if even the smallest form does not fit)
  --buckets LIST         fixed-batch graphs to build for models with dynamic convs, sharing one weights file
                         (default: 1, the per-sample form, for the CPU form; 1,2,4,8 for the CUDA form)
  --layout L             nchwc (default where onnxruntime has it: this machine's NCHWc block) | nchw (portable)
  --forms LIST           cpu (default) | cpu,cuda: also write the CUDA form (every node has a CUDA kernel)`;

const WEIGHT_FORMS: readonly DynamicForm[] = ['auto', 'dense', 'scatter', 'unpool', 'unpool64'];

export function parseGraphOptions(values: Partial<Record<keyof typeof GRAPH_OPTIONS, string>>): GraphChoice {
  const form = values['weight-form'];
  if (form !== undefined && !(WEIGHT_FORMS as readonly string[]).includes(form))
    throw new CliError(`--weight-form must be one of ${WEIGHT_FORMS.join(', ')} (got "${form}")`, 2);
  const budget = values['weights-budget-mb'];
  const buckets = values.buckets?.split(',').map((b) => Number(b.trim()));
  if (
    buckets &&
    (!buckets.length ||
      buckets.some((b, i) => !Number.isInteger(b) || b < 1 || (i > 0 && b <= buckets[i - 1]!)))
  )
    throw new CliError(
      `--buckets must be ascending positive integers such as 1,2,4,8 (got "${values.buckets}")`,
      2,
    );
  if (form === 'scatter' && (!buckets || buckets.length !== 1 || buckets[0] !== 1))
    throw new CliError('--weight-form scatter builds the per-sample form only: add --buckets 1', 2);
  const layout = values.layout;
  if (layout !== undefined && layout !== 'nchw' && layout !== 'nchwc')
    throw new CliError(`--layout must be nchwc or nchw (got "${layout}")`, 2);
  const forms = (values.forms ?? 'cpu').split(',').map((f) => f.trim());
  if (!forms.includes('cpu') || forms.some((f) => f !== 'cpu' && f !== 'cuda'))
    throw new CliError(`--forms must be cpu or cpu,cuda (got "${values.forms}")`, 2);
  return {
    form: form as DynamicForm | undefined,
    weightsBudgetBytes:
      budget === undefined ? undefined : floatOption(budget, 'weights-budget-mb', 0, 1) * 2 ** 20,
    buckets,
    layout: layout === 'nchw' ? { kind: 'nchw' } : 'probe',
    cudaForm: forms.includes('cuda'),
  };
}
