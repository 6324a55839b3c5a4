#!/usr/bin/env bash
# Installs the Debian packages Bandmate needs, only those missing, so a second run costs one dpkg query.
# `--runtime` leaves out what only the tests need (the Dockerfile uses it).
set -euo pipefail

packages=(
  jackd2                              # JACK server: the real audio and MIDI graph, also for tests (dummy driver)
  libportaudio2                       # PortAudio, under sounddevice
  libfluidsynth3                      # FluidSynth, renders training stems and sonifies the BCMI loop
  fluid-soundfont-gm                  # FluidR3_GM.sf2
  musescore-general-soundfont-small   # MuseScore_General.sf3, a second set of timbres
  libsndfile1                         # soundfile's FLAC/WAV I/O
)
if [[ "${1:-}" != "--runtime" ]]; then
  packages+=(
    chromium                          # headless browser for the browser page's test
    chromium-driver                   # lets selenium drive it
  )
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
((${#missing[@]} == 0)) && exit 0

if ((EUID == 0)); then sudo=(); elif command -v sudo >/dev/null; then sudo=(sudo); else
  echo "error: missing Debian packages (${missing[*]}) and not root: run 'apt-get install ${missing[*]}' as root" >&2
  exit 1
fi
echo "installing Debian packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
