// Fails when generated files differ from what is committed (as connect-es's
// gh-diffcheck does): regenerate, then this must find nothing changed.
import { execFileSync } from "node:child_process";

const paths = process.argv.slice(2);
const out = execFileSync("git", ["status", "--porcelain", "--", ...paths], { encoding: "utf8" });
if (out.trim() !== "") {
  console.error(`generated code is out of date; run \`npm run generate\` and commit:\n${out}`);
  process.exit(1);
}
console.log(`generated code up to date: ${paths.join(" ")}`);
