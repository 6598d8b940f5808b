// Writes a gzip (level 9) copy beside each text file of the build: the API serves it to
// browsers that accept gzip, so nothing is compressed per request.
import { readdir, readFile, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { gzipSync } from "node:zlib";

const dist = join(dirname(fileURLToPath(import.meta.url)), "..", "dist");
const TEXT = /\.(js|css|html|svg|json|map)$/;

async function* files(folder) {
  for (const entry of await readdir(folder, { withFileTypes: true })) {
    const path = join(folder, entry.name);
    if (entry.isDirectory()) yield* files(path);
    else if (TEXT.test(entry.name)) yield path;
  }
}

let count = 0;
for await (const path of files(dist)) {
  await writeFile(`${path}.gz`, gzipSync(await readFile(path), { level: 9 }));
  count += 1;
}
console.log(`compressed ${count} files`);
