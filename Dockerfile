# docker build -t yinzi .                               the service alone
# docker build -t yinzi --build-arg EXTRAS=engines .    with Demucs, both Whisper engines, diarization (CPU torch)
FROM python:3.11-slim

RUN apt-get update \
    && apt-get install -y --no-install-recommends ffmpeg fonts-wqy-microhei \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY pyproject.toml README.md constraints.txt ./
COPY yinzi yinzi
COPY workers workers

ARG EXTRAS=""
# The CPU wheel index keeps torch from pulling CUDA packages; constraints.txt pins its version.
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
RUN pip install --no-cache-dir --constraint constraints.txt --extra-index-url "$TORCH_INDEX_URL" \
        ".${EXTRAS:+[$EXTRAS]}" \
    && if [ -n "$EXTRAS" ]; then pip install --no-cache-dir --no-deps openai-whisper==20250625 resemblyzer==0.1.4; fi

ENV YINZI_HOST=0.0.0.0 \
    YINZI_PORT=8000 \
    YINZI_DATA_DIR=/data
VOLUME /data
EXPOSE 8000
CMD ["yinzi", "serve"]
