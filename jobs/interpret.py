"""Ray job: ``amber-ray interpret``, same arguments; on a GPU node with ``--entrypoint-num-gpus``.

``ray job submit --entrypoint-num-gpus 1 --working-dir . -- python jobs/interpret.py /abs/run/retrain/final \\
    --fasta /abs/seqs.fa --label LABEL --out /abs/dir``

Ray runs the job's driver on a node with a free GPU and gives it that GPU (``--device auto``, the
default, uses it). The model, the FASTA and ``--out`` must be absolute paths on that node.
"""

from _entry import run_command

if __name__ == "__main__":
    run_command("interpret")
