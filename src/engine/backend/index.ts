export { Backend, Session, type BackendOptions } from './session';
export { PROVIDERS, autoOrder, probeProvider, resolveProvider, NoProviderError, type Provider, type ProviderChoice, type ProbeResult } from './providers';
export type { HostTensor } from './ort';
export { listedProviders } from './ort';
