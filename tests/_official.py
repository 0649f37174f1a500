"""Reference code from the RePaint authors and the paper, for tests only."""


def official_get_schedule_jump(t_T, n_sample, jump_length, jump_n_sample):
    """The official RePaint schedule (guided_diffusion/scheduler.py), transcribed for n_sample=1 and no jump2/3."""
    jumps = {}
    for j in range(0, t_T - jump_length, jump_length):
        jumps[j] = jump_n_sample - 1
    t = t_T
    ts = []
    while t >= 1:
        t = t - 1
        ts.append(t)
        if jumps.get(t, 0) > 0:
            jumps[t] = jumps[t] - 1
            for _ in range(jump_length):
                t = t + 1
                ts.append(t)
    ts.append(-1)
    return ts
