"""Past one machine: serving SB2 agents on serving engines (docs/deploy.md).

sbexportd.deploy.ray   a Ray Serve application: any number of agents, each a deployment
                       with replicas and request batching, answering sbexport/predict's
                       contract over HTTP JSON and through a Python handle
The model repositories of TF Serving and Triton are export targets (tfserving, triton);
many agents at once is `sbexportd export a.zip zoo/ ...` (sbexportd.export.many)."""
