import { Code, ConnectError, type ConnectRouter, type HandlerContext } from "@connectrpc/connect";
import {
  Health,
  type HealthCheckRequest,
  HealthCheckResponse_ServingStatus as ServingStatus,
} from "../gen/grpc/health/v1/health_pb.ts";
import { ChangeSignal } from "./change-signal.ts";

export { ServingStatus };

/**
 * The largest health request message read, in bytes. A request names one
 * service (`""` or a service's full name): anything longer is not a health
 * check. Health is open to every caller, so this limit, not the server's,
 * bounds what an unauthenticated caller can make it read; past it a call is
 * answered RESOURCE_EXHAUSTED, without reading the message when its length
 * is declared.
 */
export const HEALTH_READ_MAX_BYTES = 16 * 1024;

/**
 * The gRPC health checking protocol (grpc/grpc doc/health-checking.md) for a
 * Connect router: `""` is the whole server, other names are services.
 * `Check` on an unknown service is NOT_FOUND; `Watch` on one sends
 * SERVICE_UNKNOWN and stays open, then follows the status as it changes.
 * grpc-health-check's HealthImplementation only plugs into a grpc-js Server,
 * hence this small registry.
 */
export class HealthRegistry {
  readonly #status = new Map<string, ServingStatus>();
  readonly #changed = new Set<ChangeSignal>();

  constructor(services: readonly string[] = []) {
    this.#status.set("", ServingStatus.SERVING);
    for (const s of services) this.#status.set(s, ServingStatus.SERVING);
  }

  set(service: string, status: ServingStatus): void {
    if (this.#status.get(service) === status) return;
    this.#status.set(service, status);
    for (const c of this.#changed) c.notify();
  }

  get(service: string): ServingStatus | undefined {
    return this.#status.get(service);
  }

  /** Every service NOT_SERVING: on SIGTERM, before streams are aborted. */
  shutdown(): void {
    for (const s of this.#status.keys()) this.set(s, ServingStatus.NOT_SERVING);
  }

  register(router: ConnectRouter): void {
    router.service(
      Health,
      {
        check: (req: HealthCheckRequest) => {
          const status = this.#status.get(req.service);
          if (status === undefined) {
            throw new ConnectError(`unknown service "${req.service}"`, Code.NotFound);
          }
          return { status };
        },
        list: () => ({
          statuses: Object.fromEntries(
            [...this.#status].map(([name, status]) => [name, { status }]),
          ),
        }),
        watch: (req: HealthCheckRequest, ctx: HandlerContext) => this.#watch(req.service, ctx),
      },
      { readMaxBytes: HEALTH_READ_MAX_BYTES },
    );
  }

  async *#watch(service: string, ctx: HandlerContext) {
    const changed = new ChangeSignal(); // before the first yield: no change is missed
    this.#changed.add(changed);
    try {
      let sent: ServingStatus | undefined;
      for (;;) {
        const status = this.#status.get(service) ?? ServingStatus.SERVICE_UNKNOWN;
        if (status !== sent) {
          sent = status;
          yield { status };
        }
        await changed.wait(ctx.signal);
      }
    } catch (err) {
      throw ctx.signal.aborted ? ctx.signal.reason : err;
    } finally {
      this.#changed.delete(changed);
    }
  }
}
