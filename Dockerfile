# The project's Airflow image: the official base plus the pinned requirements
# and the package. Build: docker compose build
FROM apache/airflow:3.3.2-python3.11
COPY --chown=airflow:root requirements.txt constraints.txt /opt/patron-privacy/
RUN pip install --no-cache-dir -r /opt/patron-privacy/requirements.txt \
        -c /opt/patron-privacy/constraints.txt
COPY --chown=airflow:root include/ /opt/airflow/include/
ENV PYTHONPATH=/opt/airflow/include
