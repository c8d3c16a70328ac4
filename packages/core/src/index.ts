// The public API of @clusterinfra/core, chosen name by name.
export {
  realClock,
  RealClock,
  VirtualClock,
  sleep,
  every,
  flushMicrotasks,
  type Clock,
  type TimerHandle,
  type VirtualClockOptions,
} from './clock/index.js';
export { cryptoRandom, CryptoRandom, SeededRandom, seededRandom, type RandomSource } from './random/index.js';
export { defaultLogger, silentLogger, type Logger, type LogFn } from './logging/index.js';
export { parseOptions } from './config/index.js';
export {
  ERROR_CODES,
  HANDSHAKE_REJECT_REASONS,
  AbortedError,
  AddressInUseError,
  ClusterInfraError,
  ConnectionRefusedError,
  ConnectTimeoutError,
  FrameDeadlineError,
  FrameTooLargeError,
  HandshakeRejectedError,
  HandshakeTimeoutError,
  InvalidAddressError,
  InvalidOptionError,
  isClusterInfraError,
  LinkClosedError,
  LinkResetError,
  MalformedFrameError,
  TimeoutError,
  TlsError,
  TooManyPendingError,
  TransportClosedError,
  type ClusterInfraErrorOptions,
  type ErrorCode,
  type HandshakeRejectReason,
} from './errors/index.js';
export type {
  ConnectOptions,
  Link,
  LinkCloseInfo,
  LinkCloseReason,
  LinkEvents,
  LinkState,
  Listener,
  ListenerEvents,
  NodeIdentity,
  RejectedConnection,
  Transport,
  TransportCapabilities,
  TransportContext,
  TransportFactory,
} from './contracts/index.js';
export { LinkBase, type LinkInit } from './transport/index.js';
