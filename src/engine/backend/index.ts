export { Backend, Session, type BackendOptions, type SessionOptions } from './session';
export {
  PROVIDERS,
  SPEED_PROBE,
  autoOrder,
  probeProvider,
  resolveProvider,
  describeResolution,
  judgeSpeed,
  timeSpeedProbe,
  NoProviderError,
  type Provider,
  type ProviderChoice,
  type ProbeResult,
  type ProviderResolution,
} from './providers';
export type { HostTensor, Feed, TransferStats } from './ort';
export { DeviceTensor, listedProviders, keepsOutputsOnDevice } from './ort';
export { formatPlacement, type Placement } from './placement';
