# Shifted test sets as the recipes name them (sourced after stages.sh, not executed): the
# `pipeline degrade` arguments of each name, in one place.
#
#   telephone    8 kHz, 300-3400 Hz, mu-law
#   babble<SNR>  other speakers talking at SNR dB (from the manifest given: the train speakers)
#   noise<SNR>   stationary pink noise at SNR dB
#   reverb       a synthetic room of REVERB_RT60 seconds (default 0.5, degrade's)

shift_condition() {  # name noise_manifest: sets the array SHIFT_CONDITION
  case "$1" in
    telephone) SHIFT_CONDITION=(--condition telephone) ;;
    babble*) SHIFT_CONDITION=(--condition babble --snr "${1#babble}" --noise-manifest "$2") ;;
    noise*) SHIFT_CONDITION=(--condition noise --snr "${1#noise}" --noise-color pink) ;;
    reverb) SHIFT_CONDITION=(--condition reverb --rt60 "${REVERB_RT60:-0.5}") ;;
    *) echo "unknown shifted set $1" >&2; return 1 ;;
  esac
}
