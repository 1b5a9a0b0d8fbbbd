/* A network trained by several ranks: the gradients summed across them
 * (with accumulated micro-batches), sync_batchnorm's sums, rank 0's
 * weights and buffers on every rank, and kiln_net_set_comm. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "net/net.h"

/* The batchnorm statistics a training step shares: through the
 * communicator with sync_batchnorm, else none. */
const op_sync *net_sync(const kiln_net *net)
{
    return net->c.sync_batchnorm && dist_comm_size(net->comm) > 1 ? &net->sync : NULL;
}

kiln_status net_sync_sum(void *user, double *v, size_t n, int weighted)
{
    kiln_net *net = user;
    for (size_t k = 0; weighted && k < n; k++)
        v[k] *= net->share;
    return dist_sum_doubles(net->comm, v, n, weighted ? "batchnorm gradient sums"
                                                      : "batchnorm statistics");
}

void net_dist_step(kiln_net *net, size_t mine, size_t n)
{
    net->share = n ? (double)mine / (double)n : 0;
}

kiln_status net_accumulate(kiln_net *net, size_t mine, double part)
{
    kiln_tensor *g = net->main.p->grads;
    if (!net->acc && !(net->acc = calloc(g->numel, sizeof *net->acc)))
        return error_set(KILN_ERR_OUT_OF_MEMORY, "gradient accumulation: out of host memory");
    if (!net->acc_read && !(net->acc_read = malloc(g->numel * sizeof *net->acc_read)))
        return error_set(KILN_ERR_OUT_OF_MEMORY, "gradient accumulation: out of host memory");
    if (!net->acc_filled)
        memset(net->acc, 0, g->numel * sizeof *net->acc);
    net->acc_filled = 1;
    float w = (float)(part * (dist_comm_size(net->comm) > 1 ? net->share : 1.0));
    kiln_status st = mine ? kiln_tensor_download(g, net->acc_read, g->numel) : KILN_OK;
    for (size_t k = 0; mine && st == KILN_OK && k < g->numel; k++)
        net->acc[k] += w * net->acc_read[k];
    return st;
}

/* The accumulated step's gradients, summed across the ranks, on the device. */
static kiln_status apply_accumulated(kiln_net *net)
{
    kiln_tensor *g = net->main.p->grads;
    net->acc_filled = 0;
    kiln_status st = dist_sum_floats(net->comm, net->acc, g->numel, "the accumulated gradients");
    return st == KILN_OK ? kiln_tensor_upload(g, net->acc, g->numel) : st;
}

kiln_status net_reduce_gradients(kiln_net *net, size_t mine)
{
    if (net->acc_filled)
        return apply_accumulated(net);
    if (dist_comm_size(net->comm) == 1)
        return KILN_OK;
    kiln_status st = net->buckets ? KILN_OK : buckets_create(net->main.p, &net->buckets);
    return st == KILN_OK ? buckets_reduce(net->buckets, net->comm, mine, net->share) : st;
}

kiln_status net_idle_step(kiln_net *net)
{
    net->main.p->counter++; /* as a forward would: dropout masks stay in step */
    net->main.p->sync = net_sync(net);
    return net->main.p->sync ? pipeline_sync_idle(net->main.p, net->c.loss) : KILN_OK;
}


/* Rank 0's copy of t on every rank of the network's communicator. */
static kiln_status broadcast_tensor(kiln_net *net, kiln_tensor *t, float *h)
{
    kiln_status st = kiln_tensor_download(t, h, t->numel);
    if (st == KILN_OK)
        st = dist_broadcast_floats(net->comm, h, t->numel, "rank 0's weights");
    return st == KILN_OK ? kiln_tensor_upload(t, h, t->numel) : st;
}

/* Rank 0's parameters (with params) and buffers on every rank. */
static kiln_status take_rank0(kiln_net *net, int params)
{
    pipeline *p = net->main.p;
    pipeline_params_changed(p);
    float *h = malloc(p->params->numel * sizeof *h);
    kiln_status st = !h ? error_set(KILN_ERR_OUT_OF_MEMORY, "rank 0's weights: out of host "
                                                            "memory")
                     : params ? broadcast_tensor(net, p->params, h)
                              : KILN_OK;
    for (size_t i = 0; i < p->count && st == KILN_OK; i++)
        for (int j = 0; j < p->steps[i].shapes.n_buffers && st == KILN_OK; j++) {
            kiln_tensor *b = p->steps[i].buffer[j];
            float *grown = b->numel > p->params->numel ? realloc(h, b->numel * sizeof *h) : h;
            if (!grown)
                st = error_set(KILN_ERR_OUT_OF_MEMORY, "rank 0's weights: out of host memory");
            else
                st = broadcast_tensor(net, b, h = grown);
        }
    free(h);
    return st;
}

/* Every rank starts from rank 0's parameters and buffers, as PyTorch's
 * DistributedDataParallel does. */
static kiln_status take_rank0_weights(kiln_net *net)
{
    return take_rank0(net, 1);
}

kiln_status net_take_rank0_buffers(kiln_net *net)
{
    return take_rank0(net, 0);
}

kiln_status kiln_net_set_comm(kiln_net *net, const void *mpi_comm)
{
    kiln_status st = net_check(net, "kiln_net_set_comm");
    dist_comm *c = NULL, *old = st == KILN_OK ? net->comm : NULL;
    if (st == KILN_OK && mpi_comm)
        st = dist_comm_open(mpi_comm, &c);
    if (st != KILN_OK)
        return st;
    net->comm = c;
    if (c) { /* every rank must hold the same model before weights are shared */
        dist_comm_set_timeout(c, net->c.dist_timeout);
        st = net_agree_on_layout(net, KILN_OK);
    }
    if (st != KILN_OK) {
        net->comm = old;
        dist_comm_free(c);
        return st;
    }
    dist_comm_free(old);
    return c ? take_rank0_weights(net) : KILN_OK;
}
