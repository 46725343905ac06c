# Session 10, x4 host: bf16 presets for RMSNorm fwd/bwd and LayerNorm bwd, fp16/fp32 on
# the gpu_host shapes, on GPUs 0-2; Helion-quick comparisons on GPU 3 meanwhile.
python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl 2>/dev/null
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
nvidia-smi -L; python3 -c "import torch,triton,helion,optuna;print(torch.__version__,triton.__version__,helion.__version__,optuna.__version__)"
cp tuning/configs/nvidia_h200.json /tmp/c.json
mkdir -p $OUT/cmp
(
  export CUDA_VISIBLE_DEVICES=3
  for spec in "rms_norm bwd 32768x4096" "layer_norm bwd 4096x16384" "rms_norm fwd 2048x32768" "rms_norm bwd 2048x8192" "rms_norm fwd 4096x1024" "layer_norm bwd 16384x5120"; do
    [ $SECONDS -gt 380 ] && break
    set -- $spec
    timeout 200 python3 -m tuning.compare_helion --kernel $1 --modes $2 --shapes $3 --out /tmp/cmp/$1_$2_$3 > /tmp/cmp_$1_$2_$3.log 2>&1
    cp /tmp/cmp/$1_$2_$3/compare_helion.json $OUT/cmp/compare_helion_$1_$2_$3.json 2>/dev/null
    tail -3 /tmp/cmp_$1_$2_$3.log
  done
) > /tmp/cmp_all.log 2>&1 &
CMP=$!
export CUDA_VISIBLE_DEVICES=0,1,2
S="--trials 16 --seed 10 --trial-timeout 60 --workers 3 --cache /tmp/c.json"
python3 -m tuning.sweep --kernels rms_norm --modes fwd bwd --dtypes bf16 --shapes gpu_host tritonbench llm $S --wall-budget 170 --out /tmp/sw/rms_bf16 > /tmp/sw_a.log 2>&1
python3 -m tuning.sweep --kernels layer_norm --modes bwd --dtypes bf16 --shapes gpu_host tritonbench llm $S --wall-budget 150 --out /tmp/sw/ln_bwd_bf16 > /tmp/sw_b.log 2>&1
python3 -m tuning.sweep --kernels rms_norm --modes fwd bwd --dtypes fp16 fp32 --shapes gpu_host $S --wall-budget 100 --out /tmp/sw/rms_fp16_fp32 > /tmp/sw_c.log 2>&1
python3 -m tuning.sweep --kernels layer_norm --modes bwd --dtypes fp16 fp32 --shapes gpu_host $S --wall-budget 65 --out /tmp/sw/ln_bwd_fp16_fp32 > /tmp/sw_d.log 2>&1
wait $CMP
cp /tmp/sw_*.log /tmp/cmp_*.log /tmp/sw/ 2>/dev/null
cp /tmp/c.json /tmp/sw/merged_cache.json
tar czf $OUT/sweep.tgz -C /tmp sw
tar czf $OUT/cmp_logs.tgz -C /tmp cmp
for f in /tmp/sw/*/table.txt; do echo "== $f"; cat $f; done | tail -c 6000
echo "== helion"; cat /tmp/cmp_all.log | tail -c 3000
