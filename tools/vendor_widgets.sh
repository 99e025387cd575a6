#!/usr/bin/env bash
# Re-fetch the Jupyter widget manager's JavaScript that the static site serves itself (no CDN).
# @jupyter-widgets/html-manager 1.0.15 matches ipywidgets 8.1.x. Its dist/embed.js holds the
# standard widgets and needs no require.js. Run from anywhere; needs npm and network access.
# After running it, clean the build (make clean): an incremental build does not re-copy the files.
set -euo pipefail
VERSION="${HTML_MANAGER_VERSION:-1.0.15}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEST="$ROOT/_extra/widgets"
command -v npm >/dev/null || { echo "vendor_widgets: npm is needed (install Node.js)" >&2; exit 1; }
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
echo "vendor_widgets: npm pack @jupyter-widgets/html-manager@$VERSION"
(cd "$TMP" && npm pack --silent "@jupyter-widgets/html-manager@$VERSION" >/dev/null)
tar -xzf "$TMP"/jupyter-widgets-html-manager-"$VERSION".tgz -C "$TMP"
mkdir -p "$DEST"
rm -f "$DEST"/*
cp "$TMP/package/dist/embed.js" "$TMP/package/dist/embed.js.LICENSE.txt" "$DEST/"
# Font Awesome fonts that embed.js references relative to itself (used by icon buttons only).
cp "$TMP"/package/dist/*.woff2 "$TMP"/package/dist/*.woff "$DEST/"
cp "$TMP/package/LICENSE" "$DEST/LICENSE.html-manager.txt" 2>/dev/null || true
printf "@jupyter-widgets/html-manager@%s (BSD-3-Clause, https://github.com/jupyter-widgets/ipywidgets)\n" "$VERSION" > "$DEST/VERSION"
(cd "$DEST" && sha256sum embed.js > embed.js.sha256)
echo "vendor_widgets: wrote $(ls "$DEST" | wc -l) files to ${DEST#"$ROOT"/}"
