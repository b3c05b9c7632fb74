import { defineConfig } from "vitest/config";

// Tests that do not pass reliably yet and so are not part of `npm test` (see each file's comment).
export default defineConfig({
  test: {
    globalSetup: ["test/global-setup.ts"],
    include: ["test/experimental/**/*.test.ts"],
    testTimeout: 120_000,
    hookTimeout: 180_000,
    fileParallelism: false,
    pool: "forks",
  },
});
