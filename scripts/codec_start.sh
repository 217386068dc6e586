# Sourced by the hyperprior-codec recipes (scripts/gpu_train_codec.sh, scripts/train_codec_cpu.sh).
# served_codec_start: where a run starts when it has no weights of its own, printed as a path for
# `ae-train fit --init-from`: the served default's committed weights (the highest version of
# models/image-codec holding weights.safetensors: every parameter), else the ladder's middle level
# models/image-codec-q3/3 (its graphs give the analysis and synthesis transforms; the hyper transforms,
# gains and densities start fresh).
served_codec_start() {
  local folder best="" best_version=-1 version
  for folder in models/image-codec/*/; do
    version=$(basename "$folder")
    [[ $version =~ ^[0-9]+$ && -f $folder/weights.safetensors ]] || continue
    if ((version > best_version)); then best_version=$version; best=${folder%/}; fi
  done
  echo "${best:-models/image-codec-q3/3}"
}
