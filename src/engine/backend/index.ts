export { Backend, Session, type BackendOptions } from './session';
export {
  PROVIDERS, SPEED_PROBE, autoOrder, probeProvider, resolveProvider, describeResolution, judgeSpeed, timeSpeedProbe, NoProviderError,
  type Provider, type ProviderChoice, type ProbeResult, type ProviderResolution,
} from './providers';
export type { HostTensor } from './ort';
export { listedProviders } from './ort';
