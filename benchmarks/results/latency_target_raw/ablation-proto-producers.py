import sys, time, json, os, torch
sys.path.insert(0, "/work/wt/resnet/benchmarks")
from prunekit import RunConfig
from prunekit.evaluation import accuracy
from prunekit.latency import LatencyModel
from prunekit.latency.target import group_scores
from prunekit.latency.allocate import allocate, uniform
from prunekit.pipeline import dataset_for, train_dense
from prunekit.pruning.criteria import Context
from latency_target import finetune, FASHION, PART_BUDGETS
seed = int(sys.argv[1])
cfg = RunConfig(model="resnet20", dataset="fashion-mnist", method="l1-filter", sparsity=0.0, seed=seed,
    test_limit=2000, latency_repeats=3, latency_batch_sizes=[64], noise_sigmas=[], noise_densities=[],
    data_dir=FASHION, **PART_BUDGETS["tp"])
data = dataset_for(cfg)
shape = tuple(data.input_shape)
p = f"/tmp/rdiag/dense{seed}.pt"
t0=time.time()
if os.path.exists(p):
    dense = torch.load(p, weights_only=False)
else:
    dense, _, _ = train_dense(cfg, data); torch.save(dense, p)
dense.eval()
print("dense", accuracy(dense, data.test.x, data.test.y), time.time()-t0, flush=True)
lm = LatencyModel(dense, shape, batch_size=64)
t0=time.time(); cal = lm.calibrate(); print("calib", time.time()-t0, flush=True)
for g in lm.groups: print(g.name, g.size, g.producers, flush=True)
ctx = Context(data=(data.val.x[:512], data.val.y[:512]))
scores = group_scores(dense, lm, "magnitude", ctx)
dp = lm.predict(lm.full)
schemes = sys.argv[2].split(",")
for k in (2.0, 3.0):
    b = dp / k
    for sch in schemes:
        if sch == "uniform":
            w = uniform(lm, b)
        elif sch == "group":
            w = allocate(lm, scores, b).widths
        elif sch == "layers":
            w = allocate(lm, scores, b, weights=[len(g.producers) for g in lm.groups]).widths
        else:
            continue
        m = lm.with_widths(dense, w, scores)
        t0=time.time()
        acc = finetune(m, cfg, data, recalibrate=True)
        print(json.dumps(dict(k=k, sch=sch, pred=dp/lm.predict(w), acc=acc, w=w, s=round(time.time()-t0))), flush=True)
