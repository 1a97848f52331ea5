// Mem0's own npm client (mem0ai 3.x) against PIKA: every call asserts on
// results, not only on status codes. Run with NODE_PATH pointing at the
// node_modules that hold mem0ai, and PIKA_URL and PIKA_KEY set; exits
// non-zero on the first failed check. (The client turns snake_case keys of
// answers into camelCase.)
"use strict";
const { MemoryClient } = require("mem0ai");

const url = process.env.PIKA_URL;
const key = process.env.PIKA_KEY;
const user = "mem0js-" + Math.random().toString(16).slice(2, 12);
let checks = 0;

function check(cond, what) {
  if (!cond) {
    console.error(`FAILED (npm): ${what}`);
    process.exit(1);
  }
  checks += 1;
}

const show = (v) => JSON.stringify(v);

async function raises(fn, cls, what) {
  try {
    await fn();
  } catch (e) {
    check(e.constructor.name === cls, `${what}: ${e.constructor.name} ${e.message}`);
    return e;
  }
  check(false, `${what}: no error`);
  return null;
}

async function main() {
  const client = new MemoryClient({ apiKey: key, host: url });
  await client.ping();
  check(client.organizationId && client.projectId, "ping gives org and project ids");

  // add, synchronously
  const added = await client.add(
    [
      { role: "user", content: "I have a cat named Miu and I love playing football" },
      { role: "assistant", content: "That sounds fun!" },
    ],
    { user_id: user, async_mode: false }
  );
  check(Array.isArray(added.results) && added.results.length > 0, `sync add: ${show(added)}`);
  check(added.results.every((r) => r.id && r.memory && ["ADD", "UPDATE"].includes(r.event)), `add rows: ${show(added)}`);
  check(added.results.some((r) => /Miu|cat/i.test(r.memory)), `the cat is remembered: ${show(added)}`);

  // add, asynchronously (the default): PENDING with an event id
  const pending = await client.add("Mình thích ăn phở lắm", { user_id: user });
  check(pending.status === "PENDING" && pending.eventId, `async add: ${show(pending)}`);

  // infer: false keeps the text as given, with its agent and metadata
  const given = await client.add("I keep my robot toy under the bed", {
    user_id: user, agent_id: "pika-robot", infer: false, async_mode: false, metadata: { room: "bedroom" },
  });
  check(given.results.length === 1 && given.results[0].memory === "I keep my robot toy under the bed", `infer false: ${show(given)}`);
  const toyId = given.results[0].id;

  // search with filters
  const found = await client.search("pets", { filters: { user_id: user }, top_k: 5 });
  check(found.results.some((r) => r.memory.includes("Miu")), `search finds the cat: ${show(found)}`);
  check(found.results.every((r) => r.userId === user && r.score >= 0 && r.score <= 1), `search rows: ${show(found)}`);
  check(found.results.length <= 5, "top_k bounds the results");
  const inAgent = await client.search("robot toy", { filters: { AND: [{ user_id: user }, { agent_id: "pika-robot" }] } });
  check(inAgent.results.length === 1 && inAgent.results[0].id === toyId, `agent filter: ${show(inAgent)}`);

  // getAll, paged
  const page = await client.getAll({ filters: { user_id: user }, page: 1, pageSize: 1 });
  check(page.count >= 2 && page.results.length === 1 && page.previous === null && page.next, `getAll page: ${show(page)}`);

  // get, update, history
  const one = await client.get(toyId);
  check(one.id === toyId && one.agentId === "pika-robot" && one.metadata.room === "bedroom", `get: ${show(one)}`);
  const updated = await client.update(toyId, { text: "I keep my robot toy in the toy box" });
  check(updated.memory === "I keep my robot toy in the toy box", `update: ${show(updated)}`);
  const hist = await client.history(toyId);
  check(hist.length === 2 && hist[0].event === "ADD" && hist[1].event === "UPDATE", `history: ${show(hist)}`);
  check(hist[1].oldMemory === "I keep my robot toy under the bed", `history texts: ${show(hist[1])}`);

  // batch update and delete
  const two = await client.add(
    [{ role: "user", content: "I like red apples" }, { role: "user", content: "I like green pears" }],
    { user_id: user, infer: false, async_mode: false }
  );
  const ids = two.results.map((r) => r.id);
  check(ids.length === 2, `two as given: ${show(two)}`);
  await client.batchUpdate([{ memoryId: ids[0], text: "I like yellow bananas" }, { memoryId: ids[1], text: "I like purple grapes" }]);
  check((await client.get(ids[0])).memory === "I like yellow bananas", "batch update");
  await client.batchDelete(ids);
  await raises(() => client.get(ids[0]), "MemoryNotFoundError", "a batch-deleted memory");

  // feedback, entities
  const fb = await client.feedback({ memoryId: toyId, feedback: "POSITIVE", feedbackReason: "right" });
  check(fb.feedback === "POSITIVE", `feedback: ${show(fb)}`);
  const users = await client.users();
  const mine = users.results.filter((e) => e.name === user);
  check(mine.length === 1 && mine[0].type === "user" && mine[0].totalMemories >= 2, `users: ${show(mine)}`);

  // delete one, then all
  await client.delete(toyId);
  await raises(() => client.get(toyId), "MemoryNotFoundError", "a deleted memory");
  await client.deleteAll({ user_id: user });
  const after = await client.getAll({ filters: { user_id: user } });
  check(after.count === 0, `deleteAll leaves nothing: ${show(after)}`);

  // deleteUsers erases a user
  const other = user + "-b";
  await client.add("I have a blue bike", { user_id: other, infer: false, async_mode: false });
  await client.deleteUsers({ userId: other });
  check((await client.getAll({ filters: { user_id: other } })).count === 0, "deleteUsers erases the user");

  // errors: refused filters are named; a bad key is an authentication error
  const refused = await raises(() => client.search("pets", { filters: { OR: [{ user_id: user }] } }), "ValidationError", "an OR filter");
  check(refused && refused.message.includes("OR"), `the refused filter is named: ${refused && refused.message}`);
  const bad = new MemoryClient({ apiKey: "pika_live_sk_notarealkey000000000000000", host: url });
  await raises(() => bad.search("pets", { filters: { user_id: user } }), "AuthenticationError", "an invalid key");

  console.log(`mem0ai npm client: ${checks} checks passed`);
}

main().catch((e) => {
  console.error(`FAILED (npm): ${e.stack || e}`);
  process.exit(1);
});
