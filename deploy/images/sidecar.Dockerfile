# The sidecar and SGLang-Omni's router (CPU only). Build from the repository root:
# docker build -f deploy/images/sidecar.Dockerfile -t s2-sidecar:0.1.0 .
FROM python:3.11-slim
RUN apt-get update && apt-get install -y --no-install-recommends libsndfile1 \
    && rm -rf /var/lib/apt/lists/*
COPY . /src
# The router is pure Python in the sglang-omni wheel; --no-deps keeps the GPU stack out.
RUN pip install --no-cache-dir "/src[server]" fastapi httpx uvicorn websockets pyyaml \
       msgspec msgpack pyzmq \
    && pip install --no-cache-dir --no-deps sglang-omni==0.1.9
EXPOSE 8421 8000
CMD ["s2-sidecar", "serve", "--host", "0.0.0.0"]
