// A Transport that wraps another one to make chosen ioctls fail, to observe every call, and to stop
// the process at a chosen step (crash-point tests). For tests only; nothing in src/ creates one.
import type { IoctlArg, IoctlResult, Transport } from './transport.js';

/** One call as the hooks see it; `index` counts every call through this transport from 0. */
export interface IoctlCall {
  fd: number;
  request: number;
  arg: IoctlArg;
  index: number;
}

/** Which calls a fault applies to: a request number, and/or the nth call overall (0-based). */
export interface FaultMatch {
  request?: number;
  nth?: number;
}

interface Fault {
  match: FaultMatch;
  errno: number;
  remaining: number;
}

export class FaultInjectingTransport implements Transport {
  /** Request numbers of every call, in order, faulted ones included. */
  readonly calls: number[] = [];
  /** Called before each call reaches the inner transport (or is failed); may throw or exit. */
  beforeCall: ((call: IoctlCall) => void) | undefined;
  /** Called after each call with its result. */
  afterCall: ((call: IoctlCall, result: IoctlResult) => void) | undefined;
  private readonly faults: Fault[] = [];

  constructor(private readonly inner: Transport) {}

  /** The next `times` calls matching `match` fail with `errno` without reaching the kernel. */
  failNext(match: FaultMatch, errno: number, times = 1): this {
    this.faults.push({ match, errno, remaining: times });
    return this;
  }

  /** Faults not yet used up (a test can assert that its fault was hit). */
  pendingFaults(): number {
    return this.faults.reduce((n, f) => n + f.remaining, 0);
  }

  /** How many calls were made with this request number. */
  count(request: number): number {
    return this.calls.reduce((n, r) => n + (r === request ? 1 : 0), 0);
  }

  ioctl(fd: number, request: number, arg: IoctlArg): IoctlResult {
    const call = this.begin(fd, request, arg);
    const fault = this.takeFault(call);
    const result = fault ?? this.inner.ioctl(fd, request, arg);
    this.afterCall?.(call, result);
    return result;
  }

  async ioctlAsync(fd: number, request: number, arg: IoctlArg): Promise<IoctlResult> {
    const call = this.begin(fd, request, arg);
    const fault = this.takeFault(call);
    const result = fault ?? (await this.inner.ioctlAsync(fd, request, arg));
    this.afterCall?.(call, result);
    return result;
  }

  private begin(fd: number, request: number, arg: IoctlArg): IoctlCall {
    const call: IoctlCall = { fd, request, arg, index: this.calls.length };
    this.calls.push(request);
    this.beforeCall?.(call);
    return call;
  }

  private takeFault(call: IoctlCall): IoctlResult | undefined {
    for (const f of this.faults) {
      if (f.remaining <= 0) continue;
      if (f.match.request !== undefined && f.match.request !== call.request) continue;
      if (f.match.nth !== undefined && f.match.nth !== call.index) continue;
      f.remaining--;
      return { ret: -1, errno: f.errno };
    }
    return undefined;
  }
}
