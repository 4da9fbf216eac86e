// Every op constructor. Importing this module also registers every backward rule (./backward).
export * from './elementwise';
export * from './linalg';
export * from './reduce';
export * from './shape';
export * from './nn';
export * from './quant';
export type { Operand } from './common';
export { unbroadcast } from './backward';
