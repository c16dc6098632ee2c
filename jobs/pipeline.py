"""Ray job: ``amber-ray pipeline`` (search -> retrain -> compare -> report, each step resuming from its outputs).

``ray job submit --working-dir . -- python jobs/pipeline.py jobs/configs/demo.yaml --out /abs/dir [--set KEY=VALUE]``
"""

from _entry import run_command

if __name__ == "__main__":
    run_command("pipeline")
