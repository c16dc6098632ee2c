"""Ray job: ``amber-ray train``, same arguments; on a GPU node with ``--entrypoint-num-gpus``.

``ray job submit --entrypoint-num-gpus 1 --working-dir . -- python jobs/train.py jobs/configs/demo.yaml \\
    --arch 'conv8,skip:;...' --out /abs/dir``

Ray runs the job's driver on a node with a free GPU (the autoscaler starts one if needed) and gives
it that GPU, so ``--device auto`` (the default) trains there; ``--out`` must be an absolute path.
"""

from _entry import run_command

if __name__ == "__main__":
    run_command("train")
