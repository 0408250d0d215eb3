#!/usr/bin/env bash
# `make sign-image`: sign the pushed IMAGE:VERSION by its digest with a GPG key, offline.
# The tag is read once; skopeo's standalone-sign then signs that manifest for every release
# tag (push-image's: VERSION, and vX.Y, vX for VERSION=vX.Y.Z), one signature per tag. Nothing
# is written to the registry: the signatures go to LOOKASIDE_DIR in the layout of a
# containers "lookaside" store (containers-registries.d(5)), REPOSITORY@sha256=HEX/signature-N,
# which you publish at a URL; a policy.json with signedBy then makes Podman, Buildah, CRI-O and
# skopeo refuse the image unless a signature of this key matches its digest and its tag.
# Environment: SIGN_KEY (fingerprint of a secret key), GNUPGHOME (default ~/.gnupg),
# SIGN_PASSPHRASE_FILE (for a key with a passphrase), LOOKASIDE_DIR, and those of push-image.sh.
set -euo pipefail
me="sign-image"
# shellcheck source=scripts/publish-lib.sh
. "$(dirname "$0")/publish-lib.sh"

[ -n "${SIGN_KEY:-}" ] || die "set SIGN_KEY to the fingerprint of your signing key (gpg --list-secret-keys), and GNUPGHOME if it is not in ~/.gnupg"
command -v gpg >/dev/null || die "gpg not found: apt-get install gnupg"
gpg --batch --list-secret-keys "$SIGN_KEY" >/dev/null 2>&1 \
  || die "no secret key $SIGN_KEY in ${GNUPGHOME:-~/.gnupg}: import it (gpg --import KEYFILE) or set GNUPGHOME"
lookaside=${LOOKASIDE_DIR:-$root/.run/signatures}
read -r -a tags <<<"$(release_tags)"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/agent-runner.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
digest=$(manifest_digest "docker://$image:$version" "$tmp/manifest.json")
# The repository's path in its registry: the reference without the registry host.
registry=$(registry_of "$image")
path=${image#"$registry"/}
[ "$registry" != docker.io ] || [[ $path == */* ]] || path=library/$path
dir="$lookaside/$path@sha256=${digest#sha256:}"
rm -rf "$dir"
mkdir -p "$dir"

passphrase=()
[ -z "${SIGN_PASSPHRASE_FILE:-}" ] || passphrase=(--passphrase-file "$SIGN_PASSPHRASE_FILE")
n=0
for tag in "${tags[@]}"; do
  n=$((n + 1))
  skopeo standalone-sign ${passphrase[@]+"${passphrase[@]}"} "$tmp/manifest.json" "$image:$tag" "$SIGN_KEY" \
    --output "$dir/signature-$n" || die "signing $image:$tag failed (gpg's message is above)"
done
echo "$me: signed $image@$digest as $image:{$(IFS=,; echo "${tags[*]}")} with key $SIGN_KEY"
echo "$me: signatures in $dir; publish $lookaside at the lookaside URL your verifiers' registries.d names"
