import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CONSUL_BIN, ConsulCluster, haveConsul } from "../fixtures/consul.ts";
import {
  adminClient,
  ControlPlaneProcess,
  retrying,
  Subscription,
} from "../fixtures/control-plane.ts";
import { skipUnlessAvailable } from "../fixtures/requires.ts";

// Control-plane replicas on a 3-server Consul cluster that loses its leader: writes
// resume once Consul has elected another, and nodes keep getting snapshots.

const all = { target: { case: "all" as const, value: true } };

// Skipped without Consul; with CI=true, a missing Consul fails this file instead.
const withoutConsul = skipUnlessAvailable(`Consul (${CONSUL_BIN})`, haveConsul);

describe.skipIf(withoutConsul)("control plane on a 3-server Consul cluster", () => {
  let cluster: ConsulCluster;
  let a: ControlPlaneProcess;
  let b: ControlPlaneProcess;
  let sub: Subscription | undefined;

  beforeAll(async () => {
    cluster = await ConsulCluster.start();
  });
  afterAll(async () => {
    await sub?.close();
    await Promise.all([a?.stop(), b?.stop()]);
    await cluster?.stop();
  });

  it("survives the loss of the Consul leader", async () => {
    const leader = await cluster.waitForLeader(30_000);
    const followers = cluster.servers.filter((s) => s !== leader);
    const addr = (s: { httpAddr: string }) => s.httpAddr;
    // Replica A talks to the leader first (it must move on when the leader dies);
    // replica B only to followers, and holds the node's stream.
    const prefix = `polymur-cluster-${process.pid}`;
    [a, b] = await Promise.all([
      ControlPlaneProcess.start([
        "--store",
        `consul://${[leader, ...followers].map(addr).join(",")}/${prefix}`,
        "--consul-wait",
        "10s",
      ]),
      ControlPlaneProcess.start([
        "--store",
        `consul://${followers.map(addr).join(",")}/${prefix}`,
        "--consul-wait",
        "10s",
      ]),
    ]);
    sub = new Subscription(b.url, "node-1", "web");
    await sub.waitForVersion(0);
    const admin = adminClient(a.url);
    const v1 = (await admin.addDestination({ destination: { spec: "10.0.5.30:2003", scope: all } }))
      .version;
    await sub.waitForVersion(Number(v1), 2000);

    await leader.kill("SIGKILL");
    const t0 = Date.now();
    // Writes are refused (UNAVAILABLE, store unreachable) until a new leader is elected;
    // then they go through, from the same replica, without restarting anything.
    // retrying() retries only UNAVAILABLE: any other refusal fails the test.
    const v2 = (
      await retrying(
        () => admin.addDestination({ destination: { spec: "10.0.5.31:2003", scope: all } }),
        60_000,
      )
    ).version;
    const resumedAfterMs = Date.now() - t0;
    expect(v2).toBe(v1 + 1n);
    const got = await sub.waitForVersion(Number(v2), 15_000);
    expect(got.destinations).toEqual(["10.0.5.30:2003", "10.0.5.31:2003"]);
    expect(sub.error).toBeUndefined();
    // And the next change arrives promptly: B's blocking query is parked again.
    const t1 = Date.now();
    const v3 = (await admin.createKey({ name: "after-failover" })).version;
    const next = await sub.waitForVersion(Number(v3), 2000);
    expect(next.at - t1).toBeLessThan(2000);
    console.log(`writes resumed ${resumedAfterMs} ms after the Consul leader was killed`);
    const newLeader = await cluster.waitForLeader(30_000);
    expect(newLeader).not.toBe(leader);
  });
});
