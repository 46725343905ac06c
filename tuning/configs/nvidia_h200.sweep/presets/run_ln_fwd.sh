# Session 10: LayerNorm fwd re-sweep on the pilot-shifted kernel: bf16 presets and fp16/fp32 GPU_HOST shapes, 4 workers.
python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl 2>/dev/null
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
nvidia-smi -L
cp tuning/configs/nvidia_h200.json /tmp/c.json
S="--trials 16 --seed 11 --trial-timeout 60 --workers 4 --cache /tmp/c.json"
python3 -m tuning.sweep --kernels layer_norm --modes fwd --dtypes bf16 --shapes gpu_host tritonbench llm $S --wall-budget 200 --out /tmp/sw/ln_fwd_bf16 > /tmp/sw_e.log 2>&1
python3 -m tuning.sweep --kernels layer_norm --modes fwd --dtypes fp16 fp32 --shapes gpu_host $S --wall-budget 80 --out /tmp/sw/ln_fwd_fp16_fp32 > /tmp/sw_f.log 2>&1
cp /tmp/sw_*.log /tmp/sw/
cp /tmp/c.json /tmp/sw/merged_cache.json
tar czf $OUT/sweep.tgz -C /tmp sw
for f in /tmp/sw/*/table.txt; do echo "== $f"; cat $f; done | tail -c 7000
