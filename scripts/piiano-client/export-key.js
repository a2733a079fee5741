// Piiano's generated client (@piiano/vault-client) calling `hsmkey serve`
// unchanged: getExportKey as the given API key. Prints one JSON line:
// {"status": 200, "body": {...}} or the ApiError's status and body.
// Usage: node export-key.js URL API_KEY [CUSTOM_AUDIT]
"use strict";
const { VaultClient } = require("@piiano/vault-client");

async function main() {
  const [url, apiKey, customAudit] = process.argv.slice(2);
  const client = new VaultClient({ vaultURL: url, apiKey });
  try {
    const body = await client.system.getExportKey({ customAudit });
    console.log(JSON.stringify({ status: 200, body }));
  } catch (e) {
    if (e && typeof e.status === "number") {
      console.log(JSON.stringify({ status: e.status, body: e.body }));
    } else {
      console.error(e);
      process.exit(2);
    }
  }
}

main();
