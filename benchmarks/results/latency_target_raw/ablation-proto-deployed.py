import sys, time, json, os, torch
sys.path.insert(0, "/work/wt/resnet/benchmarks")
from prunekit import RunConfig
from prunekit.evaluation import accuracy
from prunekit.latency import LatencyModel
from prunekit.latency.target import group_scores
from prunekit.latency.allocate import allocate, uniform
from prunekit.pipeline import dataset_for, train_dense
from prunekit.pruning.criteria import Context
from prunekit.surgery.fold import fold_batchnorm
from latency_target import finetune, FASHION, PART_BUDGETS
from _common import tp_uniform
seed = int(sys.argv[1])
cfg = RunConfig(model="resnet20", dataset="fashion-mnist", method="l1-filter", sparsity=0.0, seed=seed,
    test_limit=2000, latency_repeats=3, latency_batch_sizes=[64], noise_sigmas=[], noise_densities=[],
    data_dir=FASHION, **PART_BUDGETS["tp"])
data = dataset_for(cfg)
shape = tuple(data.input_shape)
p = f"/tmp/rdiag/dense{seed}.pt"
if os.path.exists(p):
    dense = torch.load(p, weights_only=False)
else:
    dense, _, _ = train_dense(cfg, data); torch.save(dense, p)
dense.eval()
lm = LatencyModel(dense, shape, batch_size=64)
lm.calibrate()
ctx = Context(data=(data.val.x[:512], data.val.y[:512]))
folded = group_scores(dense, lm, "magnitude", ctx, scoring="deployed")
dp = lm.predict(lm.full)
for item in sys.argv[2].split(","):
    sch, k = item.split("@"); k = float(k)
    b = dp / k
    t0 = time.time()
    if sch.startswith("tp"):
        m = tp_uniform(dense, float(sch[2:]), shape); w = None
    else:
        if sch == "funiform": w = uniform(lm, b)
        elif sch == "fgroup": w = allocate(lm, folded, b).widths
        elif sch == "flayers": w = allocate(lm, folded, b, weights=[len(g.producers) for g in lm.groups]).widths
        elif sch == "ftouch": w = allocate(lm, folded, b, weights=[len(g.producers)+len(g.consumers) for g in lm.groups]).widths
        m = lm.with_widths(dense, w, folded)
    acc = finetune(m, cfg, data, recalibrate=True)
    print(json.dumps(dict(k=k, sch=sch, pred=dp/lm.predict(w) if w else None, acc=acc, w=w, s=round(time.time()-t0))), flush=True)
