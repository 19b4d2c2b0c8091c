"""An ECS cluster in moto's server for the discovery tests: a service's tasks, some RUNNING and
some STOPPED, each with an awsvpc network interface.

Usage:
  moto_ecs.py setup ENDPOINT RUNNING STOPPED
      Prints {"cluster", "service", "running": [ips], "stopped": [ips]}.

Run it against scripts/moto_server.py (moto with its ECS answers in the API's types).
moto's traps (as found): every container needs `memory`; awsvpc tasks need a subnet and a
security group; task states must be frozen or moto moves them on by itself; the private IP is
only in the task's ENI attachment; `serviceName` in ListTasks is ignored (tasks are started
with `startedBy` = the service instead, which is what a service does too). The addresses are
moto's random 10.x addresses: tests only compare them, never connect to them.
"""

import json
import sys
import urllib.request

import boto3

REGION = "us-east-1"
CLUSTER = "shoal"
SERVICE = "shoal-nodes"


def client(kind, endpoint):
    return boto3.client(
        kind,
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def freeze_task_states(endpoint):
    body = json.dumps(
        {
            "model_name": "ecs::task",
            "transition": {"progression": "manual", "times": 1000000},
        }
    ).encode()
    req = urllib.request.Request(
        f"{endpoint}/moto-api/state-manager/set-transition",
        data=body,
        method="POST",
        headers={"content-type": "application/json"},
    )
    urllib.request.urlopen(req, timeout=30).read()


def private_ip(task):
    for attachment in task.get("attachments", []):
        if attachment.get("type") == "ElasticNetworkInterface":
            for detail in attachment.get("details", []):
                if detail.get("name") == "privateIPv4Address":
                    return detail["value"]
    raise SystemExit(f"task {task['taskArn']} has no private IPv4 address")


def setup(endpoint, running, stopped):
    freeze_task_states(endpoint)
    ec2 = client("ec2", endpoint)
    vpc = ec2.create_vpc(CidrBlock="10.20.0.0/16")["Vpc"]["VpcId"]
    ec2.modify_vpc_attribute(VpcId=vpc, EnableDnsHostnames={"Value": True})
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.20.0.0/20")["Subnet"]["SubnetId"]
    group = ec2.create_security_group(
        GroupName="shoal", Description="shoal gossip", VpcId=vpc
    )["GroupId"]
    ecs = client("ecs", endpoint)
    ecs.create_cluster(clusterName=CLUSTER)
    ecs.register_task_definition(
        family="shoal",
        networkMode="awsvpc",
        requiresCompatibilities=["FARGATE"],
        cpu="256",
        memory="512",
        containerDefinitions=[{"name": "shoal", "image": "shoal:test", "memory": 512}],
    )
    tasks = []
    total = running + stopped
    while len(tasks) < total:
        batch = ecs.run_task(
            cluster=CLUSTER,
            taskDefinition="shoal",
            count=min(10, total - len(tasks)),
            launchType="FARGATE",
            startedBy=SERVICE,
            networkConfiguration={
                "awsvpcConfiguration": {
                    "subnets": [subnet],
                    "securityGroups": [group],
                    "assignPublicIp": "DISABLED",
                }
            },
        )["tasks"]
        tasks.extend(batch)
    arns = [t["taskArn"] for t in tasks]
    described = {}
    for i in range(0, len(arns), 100):
        for t in ecs.describe_tasks(cluster=CLUSTER, tasks=arns[i : i + 100])["tasks"]:
            described[t["taskArn"]] = t
    stopped_arns = arns[:stopped]
    for arn in stopped_arns:
        ecs.stop_task(cluster=CLUSTER, task=arn, reason="test")
    print(
        json.dumps(
            {
                "cluster": CLUSTER,
                "service": SERVICE,
                "running": sorted(private_ip(described[a]) for a in arns[stopped:]),
                "stopped": sorted(private_ip(described[a]) for a in stopped_arns),
            }
        )
    )


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "setup":
        setup(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    else:
        raise SystemExit(__doc__)
