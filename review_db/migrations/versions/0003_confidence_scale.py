"""five-point confidence on every rating; the binary verdict derived from it

Existing ratings keep their verdict and get the scale's end that matches it (real: 1,
definitely real; synthetic: 5, definitely synthetic), so every statistic of the binary
verdicts stays exactly as it was. A rating of 3 (unsure) has the verdict ``unsure``.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""
from alembic import op
import sqlalchemy as sa


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None

BACKFILL = "UPDATE {table} SET confidence = CASE verdict WHEN 'real' THEN 1 ELSE 5 END"


def upgrade() -> None:
    for table in ('rating', 'rating_revision'):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column('confidence', sa.Integer(), nullable=True))
        op.execute(BACKFILL.format(table=table))
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.alter_column('confidence', existing_type=sa.Integer(), nullable=False)
    with op.batch_alter_table('rating', schema=None) as batch_op:
        batch_op.drop_constraint('ck_rating_verdict', type_='check')
        batch_op.create_check_constraint('ck_rating_verdict',
                                         "verdict IN ('real', 'synthetic', 'unsure')")
        batch_op.create_check_constraint('ck_rating_confidence',
                                         'confidence BETWEEN 1 AND 5')


def downgrade() -> None:
    op.execute("DELETE FROM rating WHERE verdict = 'unsure'")
    with op.batch_alter_table('rating', schema=None) as batch_op:
        batch_op.drop_constraint('ck_rating_confidence', type_='check')
        batch_op.drop_constraint('ck_rating_verdict', type_='check')
        batch_op.create_check_constraint('ck_rating_verdict', "verdict IN ('real', 'synthetic')")
        batch_op.drop_column('confidence')
    with op.batch_alter_table('rating_revision', schema=None) as batch_op:
        batch_op.drop_column('confidence')
