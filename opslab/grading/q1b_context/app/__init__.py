"""The tiny app that review question 1b packages: uvicorn app.main:app, GET /healthz."""
