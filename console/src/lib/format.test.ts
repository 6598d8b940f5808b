import { describe, expect, it } from "vitest";
import { seconds, withoutSecrets } from "./format";

describe("display helpers", () => {
  it("never shows a token or an API key", () => {
    const said =
      "could not establish signal connection: invalid token: eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl, error: token signature is invalid (key tlk_AbC-123_x)";
    expect(withoutSecrets(said)).toBe(
      "could not establish signal connection: invalid token: [token], error: token signature is invalid (key [API key])",
    );
    expect(withoutSecrets("the API cannot be reached")).toBe("the API cannot be reached");
  });

  it("shows durations in ms below a second", () => {
    expect([seconds(0.4123), seconds(1.5), seconds(null)]).toEqual(["412 ms", "1.50 s", "–"]);
  });
});
