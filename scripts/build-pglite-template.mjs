// Part of `npm run build`: makes dist/pglite-template.tgz, the migrated, empty embedded database
// a first `butler serve` starts from (see src/db/pglite-template.ts).
import { TEMPLATE_FILE } from "../dist/db/pglite-template.js";
import { writePgliteTemplate } from "../dist/db/template-writer.js";

const { bytes } = await writePgliteTemplate();
process.stdout.write(`embedded database template: ${TEMPLATE_FILE} (${(bytes / 1e6).toFixed(1)} MB)\n`);
