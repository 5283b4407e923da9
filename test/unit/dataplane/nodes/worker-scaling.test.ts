import { describe, expect, it } from "vitest";
import { CpuLoad, WorkerScaling } from "../../../../dataplane/nodes/worker-scaling.ts";

describe("WorkerScaling", () => {
  const settings = { upLoad: 0.5, upTicks: 3, downLoad: 0.25, downTicks: 4 };

  it("starts one more process only after upTicks busy ticks in a row, up to max", () => {
    const s = new WorkerScaling(1, 2, settings);
    expect(s.decide([0.9])).toBe(0);
    expect(s.decide([0.9])).toBe(0);
    expect(s.decide([0.2])).toBe(0); // the run is broken
    expect(s.decide([0.9])).toBe(0);
    expect(s.decide([0.9])).toBe(0);
    expect(s.decide([0.9])).toBe(1);
    // At max: never more.
    for (let i = 0; i < 10; i++) expect(s.decide([0.9, 0.9])).toBe(0);
  });

  it("retires one when the others could carry the load at downLoad, after downTicks, down to min", () => {
    const s = new WorkerScaling(1, 3, settings);
    // 3 processes using 0.2 in all: 2 could carry it at 0.1 each.
    for (let i = 0; i < 3; i++) expect(s.decide([0.1, 0.05, 0.05])).toBe(0);
    expect(s.decide([0.1, 0.05, 0.05])).toBe(-1);
    // Two using 0.3 in all: one alone would be above 0.25: stay.
    for (let i = 0; i < 10; i++) expect(s.decide([0.15, 0.15])).toBe(0);
    // At min: never fewer.
    for (let i = 0; i < 10; i++) expect(s.decide([0])).toBe(0);
  });

  it("a load between the thresholds neither starts nor retires", () => {
    const s = new WorkerScaling(1, 2, settings);
    for (let i = 0; i < 20; i++) expect(s.decide([0.4])).toBe(0);
    for (let i = 0; i < 20; i++) expect(s.decide([0.2, 0.2])).toBe(0);
  });

  it("min above max is max; reset forgets a run", () => {
    const s = new WorkerScaling(5, 2, settings);
    expect(s.min).toBe(2);
    expect(s.decide([0.9, 0.9])).toBe(0);
    const t = new WorkerScaling(1, 2, settings);
    t.decide([0.9]);
    t.decide([0.9]);
    t.reset();
    expect(t.decide([0.9])).toBe(0);
  });
});

describe("CpuLoad", () => {
  it("is the CPU this process used over the time between samples", () => {
    const load = new CpuLoad();
    const cpu0 = process.cpuUsage();
    const t0 = performance.now();
    let x = 0;
    for (let i = 0; i < 2e6; i++) x += Math.sqrt(i);
    expect(x).toBeGreaterThan(0);
    const used = process.cpuUsage(cpu0);
    const elapsed = performance.now() - t0;
    const l = load.sample();
    // The work above used CPU, and the sample says as much (the same
    // counters, read a moment apart): a share of a core, more than 0.
    expect(l).toBeGreaterThan(0);
    expect(l).toBeCloseTo((used.user + used.system) / 1000 / elapsed, 0);
  });
});
