// The snapshotter's refusals, each with the gRPC status containerd's errdefs maps it to: the
// server answers `code`, and containerd acts on it (its GC skips only FailedPrecondition).

export type SnapshotErrorCode = 'AlreadyExists' | 'NotFound' | 'InvalidArgument' | 'FailedPrecondition' | 'Unimplemented';

export class SnapshotError extends Error {
  override name = 'SnapshotError';
  constructor(
    readonly code: SnapshotErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}
