// Drives a live resultd through openapi-fetch typed by the schema openapi-typescript generates
// from openapi/openapi.json (scripts/clients.sh puts it in target/clients/ts/schema.d.ts).
// Usage: tsx program.ts BASE_URL. Prints one line per step; exits non-zero on any surprise.
import createClient from "openapi-fetch";
import type { components, paths } from "../../../target/clients/ts/schema.js";

type Problem = components["schemas"]["Problem"];

declare const process: { argv: string[]; exitCode?: number };

function check(condition: boolean, what: unknown): asserts condition {
  if (!condition) throw new Error(`unexpected: ${JSON.stringify(what)}`);
}

async function main(base: string): Promise<void> {
  const client = createClient<paths>({ baseUrl: base });
  const id = crypto.randomUUID();
  const path = { id };

  const created = await client.PUT("/results/{id}", {
    params: { path },
    body: { name: "invoices.render", state: "RUNNING" },
  });
  check(created.data !== undefined, created.error);
  console.log(`stored ${created.response.status} ${created.data.state}`);

  // The long poll runs beside the write; held or not yet, it answers the done record.
  const waiting = client.GET("/results/{id}", { params: { path, query: { wait: 30 } } });
  const done = await client.PUT("/results/{id}/value", {
    params: { path, query: { state: "SUCCESS" } },
    body: 42,
  });
  check(done.data !== undefined, done.error);
  console.log(`completed ${done.response.status} ${done.data.state}`);
  const waited = await waiting;
  check(waited.data !== undefined, waited.error);
  console.log(`waited ${waited.response.status} ${waited.data.state} done=${waited.data.done}`);

  const value = await client.GET("/results/{id}/value", {
    params: { path, header: { "Accept-Encoding": "gzip" } },
  });
  check(value.data !== undefined, value.error);
  const coding = value.response.headers.get("content-encoding") ?? "identity";
  console.log(`value ${coding} ${value.data.value_type} ${JSON.stringify(value.data.raw_value)}`);
  // A value over compression.min_bytes is stored and answered gzip-compressed.
  const big = { id: crypto.randomUUID() };
  await client.PUT("/results/{id}", { params: { path: big }, body: { name: "invoices.render" } });
  const stored = await client.PUT("/results/{id}/value", {
    params: { path: big, query: { state: "SUCCESS" } },
    body: [...Array(500).keys()],
  });
  check(stored.data !== undefined, stored.error);
  const large = await client.GET("/results/{id}/value", { params: { path: big, header: { "Accept-Encoding": "gzip" } } });
  check(large.data !== undefined && Array.isArray(large.data.raw_value), large.error);
  const largeCoding = large.response.headers.get("content-encoding") ?? "identity";
  console.log(`value ${largeCoding} ${large.data.value_type} ${large.data.raw_value.length}`);

  const state = { app: "clients", key: `counters-${id}`, field: "hits" };
  const first = await client.POST("/state/{app}/{key}/{field}/increment", { params: { path: state }, body: { by: 2 } });
  const second = await client.POST("/state/{app}/{key}/{field}/increment", { params: { path: state }, body: { by: 3 } });
  check(first.data !== undefined && second.data !== undefined, [first.error, second.error]);
  console.log(`incremented ${first.data.value} ${second.data.value}`);
  const read = await client.GET("/state/{app}/{key}", { params: { path: { app: state.app, key: state.key } } });
  check(read.data !== undefined, read.error);
  console.log(`state ${JSON.stringify(read.data)}`);

  const missing = await client.GET("/results/{id}", { params: { path: { id: crypto.randomUUID() } } });
  check(missing.error !== undefined, missing.data);
  const notFound: Problem = missing.error;
  console.log(`problem ${notFound.status} ${notFound.code}`);
  const clash = await client.PATCH("/results/{id}", { params: { path }, body: { state: "FAILURE" } });
  check(clash.error !== undefined, clash.data);
  const conflict: Problem = clash.error;
  console.log(`problem ${conflict.status} ${conflict.code} current_state=${conflict.current_state}`);
}

main(process.argv[2] ?? "").catch((e: unknown) => {
  console.error(e);
  process.exitCode = 1;
});
