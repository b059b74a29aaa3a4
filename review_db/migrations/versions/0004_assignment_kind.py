"""assignment kinds: main, repeat (the same image again, for test-retest) and calibration

Existing assignments are all ``main``. One reviewer may now hold one image twice in a study
(its main and its repeat assignment), so the unique key takes the kind in.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""
from alembic import op
import sqlalchemy as sa


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('assignment', schema=None) as batch_op:
        batch_op.add_column(sa.Column('kind', sa.String(length=16), nullable=False,
                                      server_default='main'))
        batch_op.drop_constraint('uq_assignment_image', type_='unique')
        batch_op.create_unique_constraint('uq_assignment_image',
                                          ['study_id', 'reviewer_id', 'image_id', 'kind'])
        batch_op.create_check_constraint('ck_assignment_kind',
                                         "kind IN ('main', 'repeat', 'calibration')")


def downgrade() -> None:
    op.execute("DELETE FROM assignment WHERE kind <> 'main'")
    with op.batch_alter_table('assignment', schema=None) as batch_op:
        batch_op.drop_constraint('ck_assignment_kind', type_='check')
        batch_op.drop_constraint('uq_assignment_image', type_='unique')
        batch_op.create_unique_constraint('uq_assignment_image',
                                          ['study_id', 'reviewer_id', 'image_id'])
        batch_op.drop_column('kind')
