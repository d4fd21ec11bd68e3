# The backorder worker image (also carries the `backorder` CLI for setup jobs).
#
# It copies the whole build context, so a package added to the project is in the image
# without touching this file; .dockerignore keeps out what is not the project (virtualenvs,
# data dirs, tests, caches, git, secrets). tests/test_deployment.py checks that every package,
# module and data file pyproject.toml installs gets here.
FROM python:3.12-slim

ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app

COPY . .
# Bytecode is compiled here, once, as root: at run time the service user cannot write
# site-packages, and the Temporal workflow sandbox imports the workflows' modules again for
# every workflow it runs, so missing .pyc files would be recompiled each time.
RUN pip install . \
 && python -m compileall -q -j 0 "$(python -c 'import sysconfig; print(sysconfig.get_path("purelib"))')" \
 && useradd --system --uid 10001 backorder

USER backorder
ENTRYPOINT ["backorder-worker"]
