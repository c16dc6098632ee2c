"""Ray job: ``amber-ray search``, same arguments.

``ray job submit --working-dir . -- python jobs/search.py jobs/configs/demo.yaml --out /abs/dir/search [--resume]``
"""

from _entry import run_command

if __name__ == "__main__":
    run_command("search")
