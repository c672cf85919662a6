// Errors as gRPC statuses, the way containerd's errdefs reads them back: a SnapshotError answers its
// own code; an error with an errno answers the code containerd gives that condition (a busy device is
// FailedPrecondition, the one code containerd's GC skips instead of aborting the pass); anything
// else is Unknown, with its message.
import { status } from '@grpc/grpc-js';
import { SnapshotError, type SnapshotErrorCode } from './errors.js';

export const SNAPSHOT_CODE_STATUS: Readonly<Record<SnapshotErrorCode, status>> = {
  AlreadyExists: status.ALREADY_EXISTS,
  NotFound: status.NOT_FOUND,
  InvalidArgument: status.INVALID_ARGUMENT,
  FailedPrecondition: status.FAILED_PRECONDITION,
  Unimplemented: status.UNIMPLEMENTED,
};

export const ERRNO_STATUS: Readonly<Record<string, status>> = {
  EBUSY: status.FAILED_PRECONDITION,
  ENOENT: status.NOT_FOUND,
  EEXIST: status.ALREADY_EXISTS,
  EINVAL: status.INVALID_ARGUMENT,
};

export interface StatusError {
  code: status;
  details: string;
}

/** The status a failed call answers. */
export function statusOf(err: unknown): StatusError {
  if (err instanceof SnapshotError) return { code: SNAPSHOT_CODE_STATUS[err.code], details: err.message };
  const message = err instanceof Error ? err.message : String(err);
  const errno = (err as { code?: unknown } | null)?.code;
  const code = typeof errno === 'string' ? ERRNO_STATUS[errno] : undefined;
  return { code: code ?? status.UNKNOWN, details: message };
}
