// The shared signed-verdict vectors (tests/vectors/signed_verdict), checked with viem; the
// Python client's tests check the same file (tests/unit/gateway/test_client_verdict_vectors.py).
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";

import { VerdictInvalid, checkSignedVerdict } from "../dist/index.js";

const vectors = JSON.parse(
  readFileSync(new URL("../../../tests/vectors/signed_verdict/signed_verdict_vectors.json", import.meta.url), "utf8"),
);

test("the shared vectors are all there", () => {
  assert.ok(vectors.length >= 16);
  assert.ok(vectors.some((v) => "want" in v) && vectors.some((v) => "want_err" in v));
});

for (const vector of vectors) {
  test(`signed verdict vector: ${vector.desc}`, async () => {
    const { signed_verdict, action, keys, now } = vector.input;
    const checking = checkSignedVerdict(signed_verdict, action, keys.verdict_signers, now);
    if (vector.want_err !== undefined) {
      await assert.rejects(checking, (error) => error instanceof VerdictInvalid && error.reason === vector.want_err);
      return;
    }
    const message = await checking;
    assert.equal(message.actionId, vector.want.action_id);
    assert.equal(message.actionHash, vector.want.action_hash);
  });
}
