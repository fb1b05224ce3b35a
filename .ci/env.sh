# Shared by the .ci scripts: the extras the project's own runs install, and a venv helper.
EXTRAS="test,zigzag,loadgen,hls4ml,dev,report,dask,board"

# make_venv DIR: a fresh virtual environment at DIR, activated.
make_venv() {
    python3 -m venv "$1"
    # shellcheck disable=SC1091
    . "$1/bin/activate"
}
