// An independent client of rrm.v1: it knows only proto/rrm/v1/*.proto (no generated code).
// RRM_ADDRESS points at a running server (the Python test starts one).
const test = require("node:test");
const assert = require("node:assert");
const path = require("node:path");
const grpc = require("@grpc/grpc-js");
const protoLoader = require("@grpc/proto-loader");

const PROTO_DIR = path.resolve(__dirname, "../../../proto");
const definition = protoLoader.loadSync(path.join(PROTO_DIR, "rrm/v1/reward.proto"), {
  includeDirs: [PROTO_DIR],
  keepCase: true,
  enums: String,
  longs: Number,
  defaults: true,
});
const rrm = grpc.loadPackageDefinition(definition).rrm.v1;
const client = new rrm.RewardService(process.env.RRM_ADDRESS, grpc.credentials.createInsecure());
const deadline = () => new Date(Date.now() + 120_000);
const call = (method, request) =>
  new Promise((resolve, reject) =>
    client[method](request, { deadline: deadline() }, (err, reply) => (err ? reject(err) : resolve(reply))),
  );

test("GetInfo", async () => {
  const info = await call("GetInfo", {});
  assert.ok(info.model.length > 0);
  assert.ok(["rrm", "generic"].includes(info.judge_profile));
  assert.ok(info.limits.max_votes > 0);
});

test("Compare", async () => {
  const reply = await call("Compare", {
    request_id: "node-compare-1",
    query: "What is the capital of France?",
    response_a: "Paris is the capital of France.",
    response_b: "The capital of France is Berlin.",
    options: { votes: 1, order: "ORDER_AS_GIVEN", max_reasoning_tokens: 16 },
  });
  assert.ok(["WINNER_A", "WINNER_B"].includes(reply.winner));
  assert.ok(reply.p_a >= 0 && reply.p_a <= 1);
  assert.strictEqual(reply.votes.length, 1);
  assert.strictEqual(reply.votes[0].shown_order, "SHOWN_ORDER_A_FIRST");
});

test("Compare with a bad field is INVALID_ARGUMENT naming it", async () => {
  await assert.rejects(call("Compare", { query: "q", response_a: "a", response_b: "" }), (err) => {
    assert.strictEqual(err.code, grpc.status.INVALID_ARGUMENT);
    assert.match(err.details, /response_b/);
    return true;
  });
});

test("Rank", async () => {
  const reply = await call("Rank", {
    query: "Name a primary colour.",
    candidates: ["Red.", "Banana.", "Blue is a primary colour."],
    strategy: "STRATEGY_KNOCKOUT",
    options: { max_reasoning_tokens: 16 },
  });
  assert.strictEqual(reply.comparisons, 2);
  assert.deepStrictEqual([...reply.ranking].sort(), [0, 1, 2]);
  assert.strictEqual(reply.winner, reply.ranking[0]);
});

test.after(() => client.close());
