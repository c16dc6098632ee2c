"""Ray job: ``amber-ray retrain``, same arguments.

``ray job submit --working-dir . -- python jobs/retrain.py jobs/configs/demo.yaml \\
    --search /abs/dir/search --out /abs/dir/retrain``
"""

from _entry import run_command

if __name__ == "__main__":
    run_command("retrain")
