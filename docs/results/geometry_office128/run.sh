set -x
COMMON="--max-num-iterations 600 --vis tensorboard --machine.seed 42 --steps-per-eval-image 100000 --steps-per-eval-all-images 100000 --pipeline.datamanager.train-num-rays-per-batch 1024 --pipeline.model.num-samples 32 --pipeline.model.num-levels 8 --pipeline.model.max-res 512 --pipeline.model.log2-hashmap-size 17"
ns-train splitnerf-sma $COMMON --pipeline.model.client-appearance True --output-dir out --experiment-name plus s2nerf-rooms --scene office --resolution 128 > plus.log 2>&1
ns-eval --load-config $(ls -d out/plus/splitnerf-sma/*/)config.yml --output-path plus_eval.json > plus_eval.log 2>&1
ns-train splitnerf-sma $COMMON --output-dir out --experiment-name split s2nerf-rooms --scene office --resolution 128 > split.log 2>&1
ns-eval --load-config $(ls -d out/split/splitnerf-sma/*/)config.yml --output-path split_eval.json > split_eval.log 2>&1
echo done
