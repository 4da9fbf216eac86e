export * from './dtype';
export * from './shape';
export {
  Graph,
  Tensor,
  GraphError,
  attr,
  halfToFloat,
  floatToHalf,
  bfloat16ToFloat,
  floatToBfloat16,
  toTyped,
} from './graph';
export type { Attr, Attrs, Node, Initializer, OutputSpec, ExternalData } from './graph';
export { serializeModel, writeModel, graphHash, DEFAULT_OPSET, IR_VERSION } from './onnx';
export * as op from './ops';
