// SPDX-License-Identifier: AGPL-3.0-only
// Copies htmx from node_modules next to the wallet bundle (served by the node, no CDN).
import { copyFileSync, mkdirSync } from "node:fs";

mkdirSync("src/mercato/gateway/static", { recursive: true });
copyFileSync("node_modules/htmx.org/dist/htmx.min.js", "src/mercato/gateway/static/htmx.min.js");
