# S2 worker: SGLang-Omni 0.1.9 serving fishaudio/s2-pro on one NVIDIA GPU (CUDA 13).
# Not built here (no GPU or Docker on the machine this project is made on).
# docker build -f deploy/images/worker.Dockerfile -t s2-worker:0.1.9 .
FROM nvidia/cuda:13.0.0-cudnn-runtime-ubuntu24.04
RUN apt-get update && apt-get install -y --no-install-recommends python3.12 python3.12-venv \
    ffmpeg curl && rm -rf /var/lib/apt/lists/*
RUN python3.12 -m venv /opt/s2 && /opt/s2/bin/pip install --no-cache-dir uv \
    && /opt/s2/bin/uv pip install --python /opt/s2/bin/python --prerelease=allow \
       "sglang-omni[fishaudio]==0.1.9" "huggingface-hub[cli]"
ENV PATH=/opt/s2/bin:$PATH SGLANG_OMNI_STRICT_PORT=1 SGLANG_OMNI_STARTUP_TIMEOUT=1800
EXPOSE 8000
CMD ["sgl-omni", "serve", "--model-path", "/models/s2-pro", "--host", "0.0.0.0", "--port", "8000", \
     "--vocoder.factory.stream_stride", "8", "--vocoder.factory.stream_followup_stride", "16"]
