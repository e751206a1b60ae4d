/** The ONNX protobuf classes (static protobufjs code from `onnx-proto`, ONNX IR 8) and dtype mapping. */
import onnxProto from 'onnx-proto';
import type { DType } from '../tensor.js';

export const onnx = onnxProto.onnx;
export type ModelProto = onnxProto.onnx.ModelProto;
export type IModelProto = onnxProto.onnx.IModelProto;
export type INodeProto = onnxProto.onnx.INodeProto;
export type ITensorProto = onnxProto.onnx.ITensorProto;
export type IValueInfoProto = onnxProto.onnx.IValueInfoProto;
export type IAttributeProto = onnxProto.onnx.IAttributeProto;

export const IR_VERSION = 8;
export const DEFAULT_OPSET = 17;

const DataType = onnxProto.onnx.TensorProto.DataType;

export const ONNX_DTYPE: Record<DType, number> = {
  float32: DataType.FLOAT,
  int64: DataType.INT64,
  int32: DataType.INT32,
  uint8: DataType.UINT8,
  bool: DataType.BOOL,
};

export function dtypeFromOnnx(code: number): DType {
  for (const [name, c] of Object.entries(ONNX_DTYPE)) if (c === code) return name as DType;
  throw new Error(`unsupported ONNX data type ${code}`);
}

export const AttributeType = onnxProto.onnx.AttributeProto.AttributeType;
export const DataLocation = onnxProto.onnx.TensorProto.DataLocation;
