import { defineConfig } from "drizzle-kit";

// Migrations are generated from src/db/schema.ts into migrations/ (no database needed to generate).
// Butler applies them itself at start-up and with `butler db migrate`, on PGlite and PostgreSQL alike.
export default defineConfig({
  dialect: "postgresql",
  schema: "./src/db/schema.ts",
  out: "./migrations",
});
