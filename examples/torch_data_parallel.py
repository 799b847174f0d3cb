"""HyperGradient on several processes with torch.distributed (gloo, CPU), data-parallel:
every process holds the whole model and half of the training and validation samples; the
gradients, the Hessian products and the hyper-gradient are averaged across processes, so
every process steps the same penalty. Per-feature ridge penalties of an nn.Linear, as in
README's example. Run with torchrun; rank 0 prints the validation loss and checks that
the processes' penalties agree bitwise."""

import torch
import torch.distributed as dist

from lancbio.torch import HyperGradient

dist.init_process_group("gloo")
rank, size = dist.get_rank(), dist.get_world_size()

gen = torch.Generator().manual_seed(0)  # the same data on every process; each takes its rows
w = torch.randn(30, 1, generator=gen, dtype=torch.float64) * (torch.rand(30, 1, generator=gen) < 0.3)
X, Xv = (torch.randn(200, 30, generator=gen, dtype=torch.float64) for _ in range(2))
t, tv = (A @ w + 0.5 * torch.randn(200, 1, generator=gen, dtype=torch.float64) for A in (X, Xv))
rows = slice(rank * 200 // size, (rank + 1) * 200 // size)
X, t, Xv, tv = X[rows], t[rows], Xv[rows], tv[rows]

torch.manual_seed(0)  # the same initial model everywhere
model = torch.nn.Linear(30, 1, dtype=torch.float64)
log_penalty = torch.zeros(30, dtype=torch.float64, requires_grad=True)
inner_opt = torch.optim.SGD(model.parameters(), lr=0.3)
outer_opt = torch.optim.SGD([log_penalty], lr=5.0)
hg = HyperGradient(model.parameters(), [log_penalty], method="lancbio", process_group=dist.group.WORLD)


def losses():
    g = ((model(X) - t) ** 2).mean() / 2 + (log_penalty.exp() * model.weight[0] ** 2).sum() / 2
    return g, ((model(Xv) - tv) ** 2).mean() / 2


for k in range(100):
    inner_opt.zero_grad()
    losses()[0].backward(inputs=list(model.parameters()))
    for p in model.parameters():  # the inner step averages its gradient too, as DDP would
        dist.all_reduce(p.grad)
        p.grad /= size
    inner_opt.step()
    outer_opt.zero_grad()
    hg.compute(*losses())
    outer_opt.step()

validation = losses()[1].detach().reshape(1)
dist.all_reduce(validation)
everyone = [torch.empty_like(log_penalty) for _ in range(size)]
dist.all_gather(everyone, log_penalty.detach())
if rank == 0:
    assert all(torch.equal(p, everyone[0]) for p in everyone), "the processes' penalties differ"
    print(f"validation loss {validation.item() / size:.3f} after {hg.hvp_count} HVPs on {size} processes")
# hg holds the group: released before the group is torn down (a process group that
# outlives destroy_process_group is destroyed at interpreter exit, which gloo does not
# survive reliably).
del hg
dist.barrier()  # no process tears the group down while another still uses it
dist.destroy_process_group()
