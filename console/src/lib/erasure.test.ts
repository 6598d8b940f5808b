import { describe, expect, it } from "vitest";
import { ApiError, type Erasure, type SessionDetail } from "../api/client";
import {
  canErase,
  eraseFailure,
  hasErasedText,
  isErased,
  isErasedText,
  requesterLabel,
  scopeLabel,
  statusText,
  stepRows,
  withErasure,
} from "./erasure";

const erasure: Erasure = {
  erasure_id: "0196a6f0-0000-7000-8000-000000000001",
  scope: "session",
  status: "completed",
  already_erased: false,
  requested_by: "ops-admin",
  requested_at: "2026-03-01T10:00:00Z",
  completed_at: "2026-03-01T10:00:01Z",
  reason: "PRIV-12",
  subject_digest: null,
  session_ids: ["s1"],
  steps: [
    { store: "key_store", action: "deleted data keys and their subjects", count: 1 },
    { store: "postgres", action: "purged personal read-model rows", count: 1234 },
    { store: "kafka", action: "tombstoned turnlog.keys", count: 2 },
    { store: "archive", action: "something new", count: 0 },
  ],
};

describe("erased state", () => {
  it("is erased once an erasure exists, pending or completed", () => {
    expect(isErased({ erasure })).toBe(true);
    expect(isErased({ erasure: { ...erasure, status: "pending", completed_at: null } })).toBe(true);
    expect(isErased({ erasure: null })).toBe(false);
    expect(isErased(null)).toBe(false);
  });

  it("reads a text as erased only when it says nothing else", () => {
    expect(isErasedText("[erased]")).toBe(true);
    expect(isErasedText("[erased] [erased]")).toBe(true); // the user's messages of a turn, joined
    expect(isErasedText("  [erased]\n")).toBe(true);
    expect(isErasedText("I said [erased] once")).toBe(false);
    expect(isErasedText("[sealed]")).toBe(false);
    expect(isErasedText("")).toBe(false);
    expect(isErasedText(null)).toBe(false);
  });

  it("finds an erased field anywhere in an event's data", () => {
    expect(hasErasedText({ role: "user", text: "[erased]" })).toBe(true);
    expect(hasErasedText({ calls: [{ name: "lookup", arguments: "[erased]", output: "[erased]" }] })).toBe(true);
    expect(hasErasedText({ role: "user", text: "hello", metrics: { e2e_latency: 1.2 } })).toBe(false);
    expect(hasErasedText({ speech_id: null, interrupted: false })).toBe(false);
  });

  it("keeps the erasure and drops the participants of the detail it erased", () => {
    const detail = { session_id: "s1", participants: ["web-1"], erasure: null } as unknown as SessionDetail;
    const erased = withErasure(detail, erasure);
    expect(erased.erasure).toBe(erasure);
    expect(erased.participants).toEqual([]);
    expect(detail.participants).toEqual(["web-1"]); // not changed in place
  });
});

describe("who may erase", () => {
  it("takes the admin scope", () => {
    expect(canErase(["tokens", "read", "admin"])).toBe(true);
    expect(canErase(["read"])).toBe(false);
    expect(canErase([])).toBe(false);
  });
});

describe("erasure words", () => {
  it("shows each step with a readable store name and its count, in order", () => {
    expect(stepRows(erasure.steps)).toEqual([
      { key: "0-key_store", store: "Key store", action: "deleted data keys and their subjects", count: "1" },
      { key: "1-postgres", store: "PostgreSQL", action: "purged personal read-model rows", count: "1,234" },
      { key: "2-kafka", store: "Kafka", action: "tombstoned turnlog.keys", count: "2" },
      { key: "3-archive", store: "archive", action: "something new", count: "0" },
    ]);
    expect(stepRows([])).toEqual([]);
  });

  it("names who asked", () => {
    expect(requesterLabel("ops-admin")).toBe("API key “ops-admin”");
    expect(requesterLabel("cli:ada")).toBe("operator “ada” (command line)");
    expect(requesterLabel("retention")).toBe("the retention policy");
  });

  it("says the scope and the status", () => {
    expect(scopeLabel(erasure)).toBe("this session");
    expect(scopeLabel({ scope: "participant", session_ids: ["a", "b"] })).toBe(
      "a participant: every session they took part in (2 sessions)",
    );
    expect(scopeLabel({ scope: "retention", session_ids: ["a"] })).toBe("the retention policy");
    expect(statusText(erasure)).toBe("completed");
    expect(statusText({ status: "pending" })).toMatch(/^pending: .*completes on its own$/);
  });
});

describe("why an erasure failed", () => {
  it("says it readably for each refusal", () => {
    expect(eraseFailure(new ApiError(404, "not_found", "no session 's1'"))).toBe(
      "The API does not know this session (404): nothing was erased.",
    );
    expect(eraseFailure(new ApiError(403, "forbidden", "this route needs an API key with the 'admin' scope"))).toMatch(
      /admin scope/,
    );
    expect(eraseFailure(new ApiError(403, "csrf_failed", "needs the header X-CSRF-Token"))).toMatch(/Sign out and in again/);
    expect(eraseFailure(new ApiError(0, "network", "the API cannot be reached (TypeError: Failed to fetch)"))).toMatch(
      /^The API cannot be reached, so the erasure may not have been made/,
    );
    expect(eraseFailure(new ApiError(401, "unauthenticated", "no session"))).toMatch(/Sign in again/);
    expect(eraseFailure(new ApiError(503, "dependency_unavailable", "PostgreSQL is unavailable"))).toBe(
      "The API could not erase the conversation now (503): PostgreSQL is unavailable",
    );
    expect(eraseFailure(new ApiError(422, "invalid_request", "reason is too long"))).toBe(
      "The erasure was refused (422): reason is too long",
    );
    expect(eraseFailure(new TypeError("boom"))).toBe("The erasure failed: TypeError: boom");
  });
});
