python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl 2>/dev/null
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
cp tuning/configs/nvidia_h200.json /tmp/c.json
S="--trials 8 --seed 12 --trial-timeout 60 --workers 1 --cache /tmp/c.json"
python3 -m tuning.sweep --kernels rms_norm --modes fwd bwd --dtypes fp16 --shapes 2048x32768 8192x4096 $S --out /tmp/sw/rms_fp16_resweep > /tmp/sw_g.log 2>&1
python3 -m tuning.sweep --kernels layer_norm --modes bwd --dtypes fp16 --shapes 8192x4096 $S --out /tmp/sw/ln_bwd_fp16_resweep > /tmp/sw_h.log 2>&1
cp /tmp/sw_*.log /tmp/sw/; cp /tmp/c.json /tmp/sw/merged_cache.json
tar czf $OUT/sweep.tgz -C /tmp sw
cat /tmp/sw/*/table.txt
